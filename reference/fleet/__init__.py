"""What a fleet of processes shares: the token manager, token state and store, leases, Redis."""

"""KIS with the Kiwoom backup: the pure failover core and its asyncio runner."""

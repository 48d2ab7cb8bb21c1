"""The KIS dialect: session core and its rules, data frames, credentials (token, approval key), REST."""

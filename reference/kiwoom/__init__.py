"""The Kiwoom dialect: session core, its rules, REAL frames and the session token."""

"""The Kiwoom dialect of the mock: profile, world (auth state), market view, session core, REST, mock."""

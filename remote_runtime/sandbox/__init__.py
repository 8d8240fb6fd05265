"""A throwaway "remote host" on this machine for tests and the README demo."""

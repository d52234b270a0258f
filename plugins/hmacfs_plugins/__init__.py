"""The built-in adaptive I/O strategies, registered by entry point."""

"""Sans-I/O protocol code: bytes and values in, values out; time is passed in, never read."""

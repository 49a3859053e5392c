"""The reference Core: authenticates probes, verifies and stores their events, acknowledges."""

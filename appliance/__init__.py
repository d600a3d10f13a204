"""The ntg-edge CLI, server, config and local classifier. The serving path imports only runtime."""

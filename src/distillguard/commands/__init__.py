"""CLI commands, one module each. A module here exposes ``register(app)``; ``cli`` finds
them all, so adding a command never means editing a shared file."""

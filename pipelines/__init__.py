"""The batch side of the platform: stages, the chain that runs them, and the CLI."""

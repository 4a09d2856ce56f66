"""One CDK stack per concern; each takes the `aws:` config and what the stacks below it made."""

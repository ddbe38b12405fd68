"""The core: what a user drops into their own loop (DEBAScheduler, the plugin bases, the
registry, the built-in signals, rules and policies). It knows nothing of DVC, W&B, files or
devices."""

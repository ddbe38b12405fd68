"""Training engine: device-resident data, timm models, the loop, checkpoints and tracking."""

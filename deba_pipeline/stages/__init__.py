"""Pipeline stages: each reads the validated params, calls the engine and writes its outputs."""

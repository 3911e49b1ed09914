"""Pure physics: arrays and a static grid in, arrays out. No config, files, flax or optax here."""

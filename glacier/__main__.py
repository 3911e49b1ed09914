"""``python -m glacier {simulate,train,invert} [overrides]``: the console scripts, by module."""

from .cli import main

if __name__ == "__main__":
    main()

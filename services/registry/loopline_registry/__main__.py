"""`python -m loopline_registry`: run the registry service."""

from loopline_registry.main import main

if __name__ == "__main__":
    main()

"""`python -m loopline_training`: run the training service."""

from loopline_training.main import main

if __name__ == "__main__":
    main()

from loopline_features.main import main

main()

from loopline_inference.main import main

main()

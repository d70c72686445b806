from loopline_monitoring.main import main

main()

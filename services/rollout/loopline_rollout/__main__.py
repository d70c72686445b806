from loopline_rollout.main import main

main()

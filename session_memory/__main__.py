from session_memory.cli import main

main()

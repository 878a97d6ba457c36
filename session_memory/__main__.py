from session_memory.cli import main

if __name__ == "__main__":  # spawned analysis workers import this module too
    main()

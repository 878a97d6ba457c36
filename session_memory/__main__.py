def main() -> None:
    # Imported only when run: analysis workers begin by importing the main module (so the
    # console script too), and need none of the command line.
    from session_memory.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

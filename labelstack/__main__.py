from labelstack.cli import main

main()

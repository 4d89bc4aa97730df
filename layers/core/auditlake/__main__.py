from auditlake.cli import main

main()

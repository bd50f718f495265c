from services.intake.app import main

main()

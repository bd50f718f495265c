from services.followup.app import main

main()

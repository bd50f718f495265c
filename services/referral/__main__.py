from services.referral.app import main

main()

"""``python -m contact_svc.wecom.standin``: serve the stand-in until interrupted."""

from contact_svc.wecom.standin.server import main

if __name__ == "__main__":
    main()

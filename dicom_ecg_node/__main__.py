"""``python -m dicom_ecg_node`` runs the ``ecg-node`` command line."""

from dicom_ecg_node.cli import main

if __name__ == "__main__":
    main()

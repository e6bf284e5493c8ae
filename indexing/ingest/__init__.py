"""Filling the archive: folders of photos, phantom datasets, DICOM files and DICOMweb (PACS) sources."""

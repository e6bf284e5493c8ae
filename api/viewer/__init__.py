"""The OHIF viewer, served by the service on a port of its own: its pinned install, its generated
configuration and the same-origin proxy that authorises its DICOMweb requests (docs/viewer.md)."""

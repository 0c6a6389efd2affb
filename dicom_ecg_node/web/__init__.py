"""The live web viewer: worklist, patient timeline and ECG view for tablets and desktops, plus its JSON/binary API.

Starlette on uvicorn, Server-Sent Events with sse-starlette, sessions signed with itsdangerous. It reads through
:mod:`dicom_ecg_node.services` (never the database directly) and draws with the layout of
:mod:`dicom_ecg_node.render`. Entry points: :func:`~dicom_ecg_node.web.app.create_app` and
:class:`~dicom_ecg_node.web.server.WebServer` (started with the node by ``ecg-node serve --http-port``).

Importing this package starts nothing; the submodules are imported by whoever uses them.
"""

"""A local stand-in for the Clipdrop cleanup API: auth, credits, rate limit, validation and faults.

`app` holds the ASGI app, `server` serves it with uvicorn, `cli` is the ``batch-inpaint emulator``
command; they are imported on use, so the main CLI does not pay for a web server it does not run.
"""

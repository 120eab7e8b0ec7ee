"""The client side of the ``tether`` command line, one module per command group.

:mod:`tether.cli_commands.common` holds what every group shares: the connection options
(``--url``, ``--token``, ``--login``/``--password``, ``--json``), the HTTP client, error
handling and rendering. :func:`tether.cli_client.register` mounts the groups on the app.
"""

"""The `omlpy` command line, built on the client (omlpy_client.Client) and nothing of the server's."""

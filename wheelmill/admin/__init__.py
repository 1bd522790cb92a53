"""Admin actions: what the ``wheelmill`` admin commands and ``/api/v1/admin/`` do, in one place."""

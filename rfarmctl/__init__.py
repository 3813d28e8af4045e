"""`rfarmctl`: the operator's command (migrate, up, embedded servers, Redis ACLs). It may import the
service packages; nothing of the service imports it."""

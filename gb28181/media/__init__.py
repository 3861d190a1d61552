"""Media sessions with devices: ``live`` (:class:`LiveStreams`: device legs, their receivers, re-INVITE
after a media timeout) and ``stages`` (the failure :class:`Stage` enum mapped once to HTTP status, SIP status
and reason, and the stream states)."""

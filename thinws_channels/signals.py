"""Lifecycle signals. Sent with ``asend_robust``: a receiver that raises is logged and the socket
goes on. Async receivers run on the event loop; sync receivers run in a thread (one thread hop
per call: keep them off ``message_received`` when messages are frequent, or make them async).

Every signal's ``sender`` is the consumer class; ``consumer`` is the consumer instance.
"""

from django.dispatch import Signal

# A socket sent a valid ``connect`` and was acked.
# kwargs: connection_id, user, rooms (list of room ids rejoined), consumer
connected = Signal()

# A connected socket went away.
# kwargs: connection_id, user, graceful (True after a ``disconnect`` frame, False when the
# socket just dropped), consumer
disconnected = Signal()

# A connectionID joined a room (sent once, by the socket that sent ``subscribe``).
# kwargs: connection_id, user, room_id, consumer
subscribed = Signal()

# A connectionID left a room (sent once, by the socket that sent ``unsubscribe``).
# kwargs: connection_id, user, room_id, consumer
unsubscribed = Signal()

# A socket published a message to a room; sent after the ack.
# kwargs: connection_id, user, room_id, payload, message_id (the server id), consumer
message_received = Signal()

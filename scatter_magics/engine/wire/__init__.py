"""The wire: how engine processes talk, and the thread their connections live on.

| module | holds |
|---|---|
| ``protocol`` | the wire format, written down once: frames, the HMAC handshake, addresses |
| ``comm`` | authenticated, framed connections (``Channel``, ``connect``) and their ``Server`` |
| ``connection`` | one TCP connection as an asyncio protocol, until a ``Channel`` adopts it |
| ``inproc`` | connections inside one process (``inproc://``): messages handed over, never pickled |
| ``serialize`` | user data as bytes: cloudpickle, protocol 5, large buffers out of band (or ``Unpickled``, as it is) |
| ``peers`` | channels to workers, and reads from whichever holder of a key answers |
| ``loop`` | the event-loop thread and ``LoopThread.sync``, the one door into it |
| ``inheritance`` | descriptors a forked child of the cluster's owner must not keep |

May import: ``engine.shm`` (a ``ShmRef`` travels in place of a large buffer) and the
package's top level (``errors``, ``structure``); nothing else of the engine.
"""

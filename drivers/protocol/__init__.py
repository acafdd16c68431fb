"""The wire protocol: frames (header, CRC-32C, sequence numbers) and message payloads, pure functions on bytes."""

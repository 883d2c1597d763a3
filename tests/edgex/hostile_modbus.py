#!/usr/bin/python3
"""A Modbus TCP server that misbehaves on purpose, for lichen's bad-input test.

  hostile_modbus.py PORT

Answers requests for holding/input registers, coils and discrete inputs (all zero) correctly,
except that of every 20 requests (counted across connections) the first seven get, in turn: an exception
(illegal data address), an answer with a newer transaction id, a late answer to an older
transaction followed by the right one, a frame cut short (then silence), a frame with a wrong
protocol id, no answer at all, and a closed connection. Prints "ready" once listening and
"served N" every 100 requests.
"""
import socket
import struct
import sys
import threading

served = 0
lock = threading.Lock()


def answer(tid, unit, pdu):
    fc = pdu[0]
    if fc in (1, 2, 3, 4):
        count = struct.unpack(">H", pdu[3:5])[0]
        data = bytes((count + 7) // 8) if fc in (1, 2) else bytes(2 * count)
        body = bytes([fc, len(data)]) + data
    elif fc in (5, 6):
        body = pdu[:5]
    elif fc in (15, 16):
        body = pdu[:5]
    else:
        body = bytes([fc | 0x80, 1])
    return struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


def handle(conn):
    global served
    try:
        while True:
            head = recv_exact(conn, 7)
            tid, _, length, unit = struct.unpack(">HHHB", head)
            pdu = recv_exact(conn, length - 1)
            with lock:
                mode = served % 20
                served += 1
                if served % 100 == 0:
                    print(f"served {served}", flush=True)
            good = answer(tid, unit, pdu)
            if mode == 0:
                conn.sendall(struct.pack(">HHHB", tid, 0, 3, unit) + bytes([pdu[0] | 0x80, 2]))
            elif mode == 1:
                conn.sendall(answer((tid + 1000) & 0xFFFF, unit, pdu))
            elif mode == 2:
                conn.sendall(answer((tid - 1) & 0xFFFF, unit, pdu) + good)
            elif mode == 3:
                conn.sendall(good[:len(good) - 2])
            elif mode == 4:
                conn.sendall(b"\x00\x01\x00\x07\x00\x03\x01\x03\x00")
            elif mode == 5:
                pass
            elif mode == 6:
                conn.close()
                return
            else:
                conn.sendall(good)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()

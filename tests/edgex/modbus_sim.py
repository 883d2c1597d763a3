#!/usr/bin/python3
"""A Modbus TCP server and client for lichen's EdgeX tests and benchmark, on pymodbus.

  modbus_sim.py serve PORT [--count]   serve the thermostat's tables on 127.0.0.1:PORT;
      --count makes holding register 0 count up on every read and logs "read N T" lines
      (T: the time of the answer, seconds since the epoch), and logs "ir T" for each read of
      the input registers, for the latency benchmark.
  modbus_sim.py read PORT TABLE ADDR   print one value (TABLE: hr, ir, co, di)
  modbus_sim.py write PORT ADDR VALUE  write one holding register

Prints "ready" once listening. Tables (0-based addresses, as EdgeX's device-modbus uses):
holding 0 = 215 (21.5 C), holding 1 = 200 (setpoint 20.0), input 0 = 45 (%), coil 0 = off,
discrete input 0 = off.
"""
import logging
import sys
import threading
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server import StartTcpServer


class CountingBlock(ModbusSequentialDataBlock):
    """Holding registers whose register 0 counts up on each read."""

    def __init__(self, values):
        super().__init__(0, values)
        self.count = 0
        self.lock = threading.Lock()

    def getValues(self, address, count=1):
        if address == 0:
            with self.lock:
                self.count += 1
                self.values[0] = self.count & 0x7FFF
                print(f"read {self.values[0]} {time.time():.6f}", flush=True)
        return super().getValues(address, count)


class TimedBlock(ModbusSequentialDataBlock):
    """Input registers that log when they are read ("ir T")."""

    def getValues(self, address, count=1):
        print(f"ir {time.time():.6f}", flush=True)
        return super().getValues(address, count)


def serve(port, counting):
    holding = [215, 200] + [0] * 30
    hr = CountingBlock(holding) if counting else ModbusSequentialDataBlock(0, holding)
    slave = ModbusSlaveContext(
        di=ModbusSequentialDataBlock(0, [0] * 32),
        co=ModbusSequentialDataBlock(0, [0] * 32),
        hr=hr,
        ir=(TimedBlock if counting else ModbusSequentialDataBlock)(0, [45] + [0] * 31),
        zero_mode=True,
    )
    context = ModbusServerContext(slaves={1: slave}, single=False)
    threading.Timer(0.5, lambda: print("ready", flush=True)).start()
    StartTcpServer(context=context, address=("127.0.0.1", port))


def client(port):
    c = ModbusTcpClient("127.0.0.1", port=port)
    if not c.connect():
        sys.exit(f"cannot connect to 127.0.0.1:{port}")
    return c


def main():
    # pymodbus logs every client that hangs up as an error: keep the test output readable.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.disable(logging.ERROR)
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "serve":
        serve(port, "--count" in sys.argv)
    elif cmd == "read":
        table, addr = sys.argv[3], int(sys.argv[4])
        c = client(port)
        read = {"hr": c.read_holding_registers, "ir": c.read_input_registers,
                "co": c.read_coils, "di": c.read_discrete_inputs}[table]
        r = read(addr, 1, slave=1)
        if r.isError():
            sys.exit(f"read failed: {r}")
        print(int(r.bits[0]) if table in ("co", "di") else r.registers[0])
    elif cmd == "write":
        c = client(port)
        r = c.write_register(int(sys.argv[3]), int(sys.argv[4]), slave=1)
        if r.isError():
            sys.exit(f"write failed: {r}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

-- The PLC directory keeps its operations in its own database on the same server.
CREATE DATABASE plc;

import { TcpTransport } from "../../src/transports/tcp.ts";
import { runTransportContract } from "./_contract.ts";
import { runStreamCases } from "./_stream_cases.ts";

runTransportContract({ name: "TcpTransport", protocol: "tcp", create: (o) => new TcpTransport(o) });
runStreamCases("tcp");

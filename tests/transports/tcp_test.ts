import { TcpTransport } from "../../transports/tcp.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({ name: "TcpTransport", protocol: "tcp", create: (o) => new TcpTransport(o) });

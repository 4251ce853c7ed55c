import { TlsTransport } from "../../transports/tls.ts";
import { runTransportContract } from "./_contract.ts";

runTransportContract({ name: "TlsTransport", protocol: "tls", create: (o) => new TlsTransport(o) });

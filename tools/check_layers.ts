/**
 * `deno task check`'s layering check: reads the real import graph (`deno info --json` over every
 * TypeScript file of the repository) and fails, naming each offending import, when
 *
 * - a folder of `src/` imports a folder above it in `tools/layers.ts`, or a folder the table
 *   does not know;
 * - files import each other in a circle (type-only imports count: a circle of types is still a
 *   circle a reader has to hold in mind);
 * - `testkit/` imports `tests/` or `bench/`, `tests/` imports `bench/` or the reverse, or
 *   `src/` imports anything outside `src/`.
 *
 * `main.ts` and `mod.ts` at the root are above everything.
 *
 * @module
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import { LAYERS } from "./layers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FLOOR = new Map(LAYERS.map(([folder], i) => [folder, i]));

/** Every `.ts` file of the repository tracked by git (fixtures and node_modules aside). */
async function sourceFiles(): Promise<string[]> {
  const out = await new Deno.Command("git", {
    args: ["ls-files", "*.ts"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  if (!out.success) throw new Error("git ls-files failed");
  return new TextDecoder().decode(out.stdout).split("\n")
    .filter((f) => f && !f.includes("/fixtures/"));
}

/** The repository's own import edges, as repository-relative paths. */
async function importGraph(files: string[]): Promise<Map<string, Set<string>>> {
  const dir = await Deno.makeTempDir({ prefix: "pvdns-layers-" });
  try {
    const rootModule = `${dir}/all.ts`;
    await Deno.writeTextFile(
      rootModule,
      files.map((f) => `import ${JSON.stringify(pathToFileURL(`${ROOT}${f}`).href)};`).join("\n"),
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", `${ROOT}deno.json`, rootModule],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    }).output();
    if (!out.success) throw new Error(`deno info failed: ${new TextDecoder().decode(out.stderr)}`);
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string; dependencies?: { code?: Dep; type?: Dep }[] }[];
    };
    const repo = pathToFileURL(ROOT).href;
    const edges = new Map<string, Set<string>>();
    for (const m of info.modules) {
      if (!m.specifier.startsWith(repo)) continue;
      const from = m.specifier.slice(repo.length);
      const to = edges.get(from) ?? new Set<string>();
      edges.set(from, to);
      for (const d of m.dependencies ?? []) {
        for (const dep of [d.code, d.type]) {
          if (dep?.specifier?.startsWith(repo)) to.add(dep.specifier.slice(repo.length));
        }
      }
    }
    return edges;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
interface Dep {
  specifier?: string;
}

/** Where a file stands: a `src/` folder's floor, or one of the other top-level areas. */
function area(file: string): string {
  if (file.startsWith("src/")) return `src/${file.split("/")[1]}`;
  if (!file.includes("/")) return "root";
  return file.split("/")[0]!;
}

/** Why the import `from → to` breaks the stack, or undefined when it is allowed. */
export function layeringError(from: string, to: string): string | undefined {
  const a = area(from), b = area(to);
  if (a === b) return undefined;
  if (a.startsWith("src/")) {
    const fa = FLOOR.get(a.slice(4)), fb = FLOOR.get(b.slice(4));
    if (fa === undefined) return `${a}/ is not in tools/layers.ts`;
    if (!b.startsWith("src/")) return `src/ may import only src/, not ${b}`;
    if (fb === undefined) return `${b}/ is not in tools/layers.ts`;
    if (fb > fa) {
      return `${a.slice(4)} (floor ${fa + 1}) may not import ${b.slice(4)} (floor ${fb + 1}), ` +
        `which stands above it`;
    }
    return undefined;
  }
  const forbidden: Record<string, string[]> = {
    testkit: ["tests", "bench"],
    tests: ["bench"],
    bench: ["tests"],
    tools: ["tests", "bench", "testkit"],
  };
  if (forbidden[a]?.includes(b)) return `${a}/ may not import ${b}/`;
  return undefined;
}

/** The file circles of a graph (Tarjan's strongly connected components of more than one file). */
export function fileCircles(edges: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], on = new Set<string>(), circles: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index), low.set(v, index), index++, stack.push(v), on.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) visit(w), low.set(v, Math.min(low.get(v)!, low.get(w)!));
      else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do (w = stack.pop()!, on.delete(w), c.push(w)); while (w !== v);
      if (c.length > 1) circles.push(c.sort());
    }
  };
  for (const v of [...edges.keys()].sort()) if (!idx.has(v)) visit(v);
  return circles;
}

if (import.meta.main) {
  const edges = await importGraph(await sourceFiles());
  const problems: string[] = [];
  for (const [from, tos] of [...edges].sort(([a], [b]) => a.localeCompare(b))) {
    for (const to of [...tos].sort()) {
      const why = layeringError(from, to);
      if (why) problems.push(`${from} imports ${to}: ${why}`);
    }
  }
  for (const c of fileCircles(edges)) {
    problems.push(`files import each other in a circle: ${c.join(" ↔ ")}`);
  }
  if (problems.length) {
    console.error(`layering check: ${problems.length} problem(s)\n  ${problems.join("\n  ")}`);
    Deno.exit(1);
  }
  const srcFiles = [...edges.keys()].filter((f) => f.startsWith("src/")).length;
  console.log(
    `layering check: ${edges.size} files (${srcFiles} in src/), no import runs up the stack, no circle`,
  );
}

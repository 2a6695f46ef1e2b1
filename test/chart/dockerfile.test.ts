// Static checks of the Dockerfile (no docker engine here): what it copies exists, the runtime stage
// holds production dependencies and the compiled product only, and its ENTRYPOINT exists after the build.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, posix, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/** Repository root: this file compiles to <repo>/dist/test/chart/dockerfile.test.js. */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

interface Instruction {
  keyword: string; // upper case
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Parses a Dockerfile into stages: joins `\` continuations, drops comments and blank lines. */
function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let cur = lines[i]!.trim();
    if (cur === "" || cur.startsWith("#")) continue;
    while (cur.endsWith("\\") && i + 1 < lines.length) {
      cur = cur.slice(0, -1);
      const next = lines[++i]!.trim();
      if (!next.startsWith("#")) cur += " " + next;
    }
    const m = /^(\S+)\s*(.*)$/.exec(cur)!;
    instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
  }
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(m, `line ${ins.line}: cannot parse FROM ${ins.args}`);
      stages.push({ from: m[1]!, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else {
      assert.ok(stages.length > 0, `line ${ins.line}: ${ins.keyword} before FROM`);
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return stages;
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string; // absolute in the image
  line: number;
}

/** COPY/ADD instructions of a stage, with destinations resolved against WORKDIR. */
function copies(stage: Stage): Copy[] {
  let workdir = "/";
  const out: Copy[] = [];
  for (const ins of stage.instructions) {
    if (ins.keyword === "WORKDIR") workdir = posix.resolve(workdir, ins.args);
    if (ins.keyword !== "COPY" && ins.keyword !== "ADD") continue;
    let words: string[];
    if (ins.args.startsWith("[")) words = JSON.parse(ins.args) as string[];
    else words = ins.args.split(/\s+/);
    let from: string | undefined;
    while (words[0]?.startsWith("--")) {
      const flag = words.shift()!;
      if (flag.startsWith("--from=")) from = flag.slice("--from=".length);
    }
    assert.ok(words.length >= 2, `line ${ins.line}: COPY needs a source and a destination`);
    const dest = words.pop()!;
    out.push({ ...(from ? { from } : {}), sources: words, dest: posix.resolve(workdir, dest), line: ins.line });
  }
  return out;
}

function exec(ins: Instruction): string[] {
  assert.ok(ins.args.startsWith("["), `line ${ins.line}: ${ins.keyword} should use the exec (JSON) form`);
  return JSON.parse(ins.args) as string[];
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.keyword === keyword).at(-1);
}

/** .dockerignore patterns (simplified matcher: `*` within one path segment, prefix = directory). */
function dockerignore(): RegExp[] {
  const path = join(repoRoot, ".dockerignore");
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#") && !l.startsWith("!"))
    .map((p) => p.replace(/^\/+|\/+$/g, ""))
    .map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")}(/.*)?$`));
}

function ignored(path: string, patterns: RegExp[]): boolean {
  const p = posix.normalize(path).replace(/^\.\/|\/$/g, "");
  return patterns.some((re) => re.test(p));
}

function walkJs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walkJs(p));
    else if (name.endsWith(".js")) out.push(p);
  }
  return out;
}

const dockerfileText = readFileSync(join(repoRoot, "Dockerfile"), "utf8");
const stages = parseDockerfile(dockerfileText);
const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
};

describe("Dockerfile", () => {
  const build = stages[0]!;
  const runtime = stages.at(-1)!;

  it("has a build stage and a runtime stage, both node:20-bookworm-slim", () => {
    assert.equal(stages.length, 2);
    assert.equal(build.from, "node:20-bookworm-slim");
    assert.equal(build.name, "build");
    assert.equal(runtime.from, "node:20-bookworm-slim");
  });

  it("build stage runs npm ci and npm run build (a script package.json has)", () => {
    const runs = build.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(runs.some((r) => /\bnpm ci\b/.test(r)), "npm ci");
    assert.ok(runs.some((r) => /\bnpm run build\b/.test(r)), "npm run build");
    assert.ok(pkg.scripts?.build, "package.json has no build script");
  });

  it("copies from the build context only files that exist and .dockerignore keeps", () => {
    const patterns = dockerignore();
    const contextSources = stages.flatMap(copies).filter((c) => !c.from).flatMap((c) => c.sources);
    for (const required of ["package.json", "package-lock.json"]) {
      assert.ok(contextSources.includes(required), `the Dockerfile should COPY ${required}`);
    }
    for (const src of contextSources) {
      assert.ok(existsSync(join(repoRoot, src)), `COPY ${src}: no such file or directory in the project`);
      assert.ok(!ignored(src, patterns), `COPY ${src}: excluded by .dockerignore`);
    }
  });

  it(".dockerignore keeps host node_modules and dist out of the build context", () => {
    const patterns = dockerignore();
    assert.ok(patterns.length > 0, ".dockerignore missing or empty");
    for (const p of ["node_modules", "dist", ".git", "test"]) assert.ok(ignored(p, patterns), `${p} not ignored`);
  });

  it("runtime stage installs production dependencies only", () => {
    const installs = runtime.instructions
      .filter((i) => i.keyword === "RUN" && /\bnpm (ci|install|i)\b/.test(i.args))
      .map((i) => i.args);
    assert.ok(installs.length > 0, "runtime stage installs no dependencies");
    for (const r of installs) assert.match(r, /--omit=dev\b|--production\b/, `not production-only: ${r}`);
    for (const c of copies(runtime)) {
      for (const s of c.sources) assert.doesNotMatch(s, /node_modules/, `line ${c.line}: node_modules copied from ${c.from ?? "the context"}`);
    }
  });

  it("runtime stage copies the compiled product dist/src and dist/native, never dist/test", () => {
    const fromBuild = copies(runtime).filter((c) => c.from === build.name);
    const sources = fromBuild.flatMap((c) => c.sources.map((s) => posix.normalize(s)));
    assert.deepEqual([...sources].sort(), ["/app/dist/native", "/app/dist/src"]);
    for (const c of fromBuild) {
      for (const s of c.sources) assert.equal(c.dest, posix.normalize(s), `line ${c.line}: copy ${s} to the same path`);
    }
    assert.ok(!sources.some((s) => /dist\/test|^\/app\/dist\/?$/.test(s)), "tests must not ship");
  });

  it("ENTRYPOINT is node /app/dist/src/cli/main.js and CMD is run", () => {
    assert.deepEqual(exec(last(runtime, "ENTRYPOINT")!), ["node", "/app/dist/src/cli/main.js"]);
    assert.deepEqual(exec(last(runtime, "CMD")!), ["run"]);
  });

  it("the ENTRYPOINT file exists in the build output (dist/src/cli/main.js)", () => {
    const entry = exec(last(runtime, "ENTRYPOINT")!)[1]!;
    const inRepo = join(repoRoot, relative("/app", entry));
    assert.ok(
      existsSync(inRepo),
      `${relative(repoRoot, inRepo)} does not exist: build first (npm run build); it is compiled from src/cli/main.ts`,
    );
  });

  it("the compiled product imports only production dependencies and Node built-ins", () => {
    const files = [...walkJs(join(repoRoot, "dist", "src")), ...walkJs(join(repoRoot, "dist", "native"))];
    const deps = new Set(Object.keys(pkg.dependencies ?? {}));
    const builtins = new Set(builtinModules);
    const problems: string[] = [];
    // Static import/export ... from "x", side-effect import "x", dynamic import("x"), require("x").
    const specifier =
      /^\s*(?:(?:import|export)\s[^;]*?\bfrom\s*|import\s*)["']([^"']+)["']|\b(?:import|require)\(\s*["']([^"']+)["']\s*\)/gm;
    for (const file of files) {
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(specifier)) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith(".")) {
          const target = resolve(dirname(file), spec);
          const rel = relative(join(repoRoot, "dist"), target);
          if (!/^(src|native)([/\\]|$)/.test(rel)) problems.push(`${relative(repoRoot, file)} imports ${spec} (outside dist/src, dist/native)`);
          continue;
        }
        if (spec.startsWith("node:") || builtins.has(spec) || builtins.has(spec.split("/")[0]!)) continue;
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
        if (!deps.has(name)) problems.push(`${relative(repoRoot, file)} imports ${spec}, not a production dependency`);
      }
    }
    assert.deepEqual(problems, []);
  });
});

// A small stand-in for Jenkins' declarative pipeline, in plain Groovy 2.4 (no
// Jenkins jars): it evaluates a Jenkinsfile and runs its `sh` steps for real, so
// the tests can drive jenkins/Jenkinsfile end to end where no Jenkins runs.
//
//   groovy pipeline-shim.groovy [--credentials FILE] [--workspace DIR] [--parse-only]
//          JENKINSFILE [NAME=VALUE]...
//
// NAME=VALUE are build parameters ("Build with Parameters"); the rest take the
// Jenkinsfile's defaults. --credentials is a JSON file standing in for Jenkins'
// credentials store:
//
//   { "deploy-ssh": { "type": "sshUserPrivateKey", "username": "u",
//                     "privateKeyFile": "/path/key", "passphrase": "" },
//     "known-hosts": { "type": "file", "file": "/path/known_hosts" },
//     "token": { "type": "string", "secret": "..." } }
//
// What it implements, the way Jenkins behaves:
// - pipeline, agent, options, parameters (string, booleanParam, choice, text,
//   password), environment (pipeline and stage level), stages, stage, steps,
//   when { expression {...} }, script, post (always, success, failure, unstable,
//   changed, fixed, regression, aborted, cleanup), at pipeline and stage level;
// - steps: sh (returnStdout, returnStatus; run as `/bin/sh -xe -c SCRIPT` like
//   Jenkins, so bashisms fail here as on a Debian agent), echo, error, dir,
//   withEnv, withCredentials (sshUserPrivateKey, file, string,
//   usernamePassword), sshagent (a real ssh-agent holding the keys), git (a
//   real clone or fetch), readFile, writeFile, fileExists, pwd, timeout
//   (runs the body, no time limit), retry;
// - parallel (scripted: `parallel branches`, `parallel(a: {..}, b: {..},
//   failFast: true)`, usable in a `script` block): one thread per branch, all
//   at once; each branch starts with a copy of the caller's scoped environment
//   (stage environment, withEnv, withCredentials) and directory, so those never
//   leak between branches, while `env.X = ...` sets the build's variable for
//   all. Without failFast every branch runs to its end and then `parallel`
//   fails if any branch failed ("Failed in branch NAME: ..."). With failFast
//   the first failure aborts the other branches: the processes their steps run
//   (sh, git), with all their descendants, get SIGTERM and SIGKILL 5 s later if
//   still there; an aborted branch starts no further step and `retry` does not
//   retry it; `parallel` then fails naming the branch that failed first. Lines
//   that `echo` prints in a branch start with `[NAME] `; sh output of branches
//   interleaves.
// - env (Jenkins' variables: WORKSPACE, BUILD_NUMBER, BUILD_TAG, JOB_NAME,
//   STAGE_NAME, plus the parameters), params, currentBuild.
// A failing step fails its stage; later stages are skipped; post runs.
// It prints `[Pipeline] stage (NAME)` banners and ends with
// `Finished: SUCCESS|FAILURE`; the exit status is 0 or 1.

import groovy.json.JsonSlurper

class StepFailure extends RuntimeException {
    StepFailure(String message) { super(message) }
}

// A step in a branch that `parallel` aborted (failFast), like Jenkins'
// FlowInterruptedException: `retry` lets it through.
class FlowInterrupted extends StepFailure {
    FlowInterrupted(String message) { super(message) }
}

// Whether a parallel branch (or the run outside any branch, the root) has been
// aborted, and the processes its steps are running, for the abort to kill.
// Aborting a branch aborts the branches of a `parallel` nested in it.
@groovy.transform.CompileStatic
class Abort {
    final Abort parent
    private volatile boolean aborted = false
    private volatile String why
    private final List<Abort> children = []
    private final Set<Process> processes = new LinkedHashSet<Process>()

    Abort(Abort parent) {
        this.parent = parent
        if (parent != null) parent.adopt(this)
    }

    private synchronized void adopt(Abort child) { children.add(child) }
    synchronized void release(Abort child) { children.remove(child) }

    boolean isAborted() { aborted || (parent != null && parent.isAborted()) }
    String getReason() { aborted ? why : parent?.getReason() }

    // Marks this branch and those under it aborted; the processes they run, to kill.
    List<Process> abort(String reason) {
        List<Process> running = []
        List<Abort> under
        synchronized (this) {
            if (!aborted) { why = reason; aborted = true }
            running.addAll(processes)
            under = new ArrayList<Abort>(children)
        }
        for (Abort child : under) running.addAll(child.abort(reason))
        running
    }

    // Registers a process a step started; false if the branch is aborted already
    // (the caller kills it then).
    boolean track(Process process) {
        synchronized (this) {
            if (!isAborted()) { processes.add(process); return true }
        }
        false
    }
    synchronized void untrack(Process process) { processes.remove(process) }
}

// Ends processes the way Jenkins ends an interrupted sh: each process and all
// its descendants get SIGTERM; those still there after the grace get SIGKILL.
@groovy.transform.CompileStatic
class Kill {
    static final long GRACE_MILLIS = 5000

    // Returns how many processes needed SIGKILL.
    static int terminate(Collection<Process> processes) {
        List<ProcessHandle> all = []
        for (Process process : processes) {
            // The descendants before the parent dies: then they are no longer its.
            ProcessHandle top = process.toHandle()
            all.add(top)
            Iterator<ProcessHandle> below = top.descendants().iterator()
            while (below.hasNext()) all.add(below.next())
        }
        // The shells first, so that they start nothing more.
        for (ProcessHandle h : all) h.destroy()
        List<ProcessHandle> left = waitFor(all, GRACE_MILLIS)
        for (ProcessHandle h : left) h.destroyForcibly()
        waitFor(left, 1000)
        left.size()
    }

    // Those of `handles` still running after `millis`.
    static List<ProcessHandle> waitFor(List<ProcessHandle> handles, long millis) {
        long deadline = System.nanoTime() + millis * 1000000L
        List<ProcessHandle> left = handles.findAll { ProcessHandle h -> running(h) }
        while (!left.isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(20)
            left = left.findAll { ProcessHandle h -> running(h) }
        }
        left
    }

    // Alive and not a zombie (an orphan waits for init to reap it).
    static boolean running(ProcessHandle h) {
        if (!h.isAlive()) return false
        File stat = new File("/proc/" + h.pid() + "/stat")
        if (!stat.exists()) return !new File('/proc/self').exists()
        String text
        try { text = stat.text } catch (IOException ignored) { return false }
        int close = text.lastIndexOf(')')
        String state = close > 0 && text.length() > close + 2 ? text.substring(close + 2, close + 3) : '?'
        state != 'Z' && state != 'X'
    }
}

// The state of the thread running steps: the scoped environment layers (stage
// environment, withEnv, withCredentials), innermost last, the directory, and
// the parallel branch it runs in (null outside any).
class Ctx {
    List<Map<String, String>> layers = []
    File cwd
    String branch
    Abort abort

    // A branch's copy of it.
    Ctx fork(String name, Abort branchAbort) {
        new Ctx(layers: layers.collect { new LinkedHashMap<String, String>(it) }, cwd: cwd, branch: name, abort: branchAbort)
    }
}

class Build {
    String result = null
    String getCurrentResult() { result ?: 'SUCCESS' }
    int number = 1
    String displayName
    String description
    String failedStage
}

// `environment { KEY = value }`: records assignments in order, later ones see earlier ones.
class EnvBlock {
    Map<String, String> values = new LinkedHashMap<>()
    Closure<Void> onSet
    def propertyMissing(String name, value) {
        String text = value == null ? '' : value.toString()
        values[name] = text
        onSet?.call(name, text)
    }
    def propertyMissing(String name) { throw new MissingPropertyException(name, EnvBlock) }
}

class PipelineSpec {
    Closure optionsBlock, parametersBlock, environmentBlock, stagesBlock, postBlock
    def agent(Object ignored) {}
    def agent(Map ignored) {}
    def agent(Closure ignored) {}
    def options(Closure c) { optionsBlock = c }
    def parameters(Closure c) { parametersBlock = c }
    def environment(Closure c) { environmentBlock = c }
    def stages(Closure c) { stagesBlock = c }
    def post(Closure c) { postBlock = c }
    def triggers(Closure c) {}
    def tools(Closure c) {}
}

class ParamsSpec {
    Map<String, Object> defaults = new LinkedHashMap<>()
    def string(Map m) { defaults[m.name] = m.defaultValue ?: '' }
    def text(Map m) { defaults[m.name] = m.defaultValue ?: '' }
    def password(Map m) { defaults[m.name] = m.defaultValue ?: '' }
    def booleanParam(Map m) { defaults[m.name] = m.defaultValue ?: false }
    def choice(Map m) { defaults[m.name] = (m.choices instanceof List ? m.choices[0] : m.choices.toString().split('\n')[0]) }
}

class OptionsSpec {
    List<String> seen = []
    def methodMissing(String name, args) { seen << name; null }
}

class StagesSpec {
    List<List> stages = []
    def stage(String name, Closure body) { stages << [name, body] }
}

class StageSpec {
    Closure stepsBlock, environmentBlock, whenBlock, postBlock
    def steps(Closure c) { stepsBlock = c }
    def environment(Closure c) { environmentBlock = c }
    def when(Closure c) { whenBlock = c }
    def post(Closure c) { postBlock = c }
    def agent(Object ignored) {}
    def options(Closure ignored) {}
}

class WhenSpec {
    List<Closure> expressions = []
    def expression(Closure c) { expressions << c }
}

class PostSpec {
    Map<String, Closure> blocks = [:]
    def methodMissing(String name, args) {
        def known = ['always', 'success', 'failure', 'unstable', 'changed', 'fixed', 'regression', 'aborted', 'cleanup', 'unsuccessful']
        if (!(name in known) || !(args.length == 1 && args[0] instanceof Closure)) {
            throw new MissingMethodException(name, PostSpec, args)
        }
        blocks[name] = args[0]
    }
}

// `env`: reads and writes the build's variables; an unknown one is null, as in Jenkins.
class EnvVars extends GroovyObjectSupport {
    Closure<Map> current
    Map<String, String> global
    Object getProperty(String name) { current.call()[name] }
    void setProperty(String name, Object value) { global[name] = value == null ? null : value.toString() }
    Map<String, String> getEnvironment() { current.call() }
}

// Bare names resolve like Jenkins: script variables, then env (which holds the params).
class PipelineBinding extends Binding {
    Closure<Map> env
    Object getVariable(String name) {
        if (variables.containsKey(name)) return super.getVariable(name)
        def vars = env?.call()
        if (vars != null && vars.containsKey(name)) return vars[name]
        throw new MissingPropertyException(name, getClass())
    }
}

// ---- arguments

def usage = 'usage: groovy pipeline-shim.groovy [--credentials FILE] [--workspace DIR] [--parse-only] JENKINSFILE [NAME=VALUE]...'
def argv = args as List
String credentialsPath = System.getenv('SHIM_CREDENTIALS')
String workspacePath = System.getProperty('user.dir')
boolean parseOnly = false
while (argv && argv[0].startsWith('--')) {
    def flag = argv.remove(0)
    switch (flag) {
        case '--credentials': credentialsPath = argv.remove(0); break
        case '--workspace': workspacePath = argv.remove(0); break
        case '--parse-only': parseOnly = true; break
        default: System.err.println(usage); System.exit(2)
    }
}
if (!argv) { System.err.println(usage); System.exit(2) }
File jenkinsfile = new File(argv.remove(0))
Map<String, String> given = [:]
argv.each { a ->
    int eq = a.indexOf('=')
    if (eq <= 0) { System.err.println("not NAME=VALUE: ${a}\n${usage}"); System.exit(2) }
    given[a.substring(0, eq)] = a.substring(eq + 1)
}

// ---- state

File workspace = new File(workspacePath).canonicalFile
workspace.mkdirs()
// Jenkins copies secrets into WORKSPACE@tmp, a sibling of the workspace. The
// shim makes it for the first copy and removes it when it ends (unless it was
// there before): a test's workspace is a temp dir, and its sibling would be
// left behind in /tmp.
File tmpDir = new File(workspace.path + '@tmp')
boolean tmpDirIsOurs = !tmpDir.exists()
addShutdownHook { if (tmpDirIsOurs) tmpDir.deleteDir() }
Map credentials = credentialsPath ? new JsonSlurper().parse(new File(credentialsPath)) as Map : [:]

// Shared by parallel branches: copies are taken under its lock.
Map<String, String> globalEnv = Collections.synchronizedMap(new LinkedHashMap<String, String>(System.getenv()))
String jobName = System.getenv('SHIM_JOB_NAME') ?: 'bg-deploy'
String buildNumber = System.getenv('SHIM_BUILD_NUMBER') ?: '1'
globalEnv.putAll([
    WORKSPACE   : workspace.path,
    JOB_NAME    : jobName,
    JOB_BASE_NAME: jobName,
    BUILD_NUMBER: buildNumber,
    BUILD_ID    : buildNumber,
    BUILD_TAG   : "jenkins-${jobName}-${buildNumber}".toString(),
    BUILD_URL   : "http://jenkins.invalid/job/${jobName}/${buildNumber}/".toString(),
    JENKINS_URL : 'http://jenkins.invalid/',
    NODE_NAME   : 'built-in',
])
// Per thread: the main one's, and each parallel branch's copy of its caller's.
Abort rootAbort = new Abort(null)
ThreadLocal<Ctx> context = ThreadLocal.withInitial({ new Ctx(cwd: workspace, abort: rootAbort) } as java.util.function.Supplier)
Closure<Ctx> ctx = { context.get() }
Closure<Map> currentEnv = {
    Map<String, String> all
    synchronized (globalEnv) { all = new LinkedHashMap<>(globalEnv) }
    ctx().layers.each { all.putAll(it) }
    all
}
def build = new Build(number: buildNumber as int, displayName: "#${buildNumber}".toString())
Map params = [:]
def binding = new PipelineBinding(env: currentEnv)
def envVars = new EnvVars(current: currentEnv, global: globalEnv)

def withLayer = { Map<String, String> layer, Closure body ->
    List<Map<String, String>> layers = ctx().layers
    layers << layer
    try { body() } finally { layers.remove(layers.size() - 1) }
}

def log = { String line -> System.out.println(line); System.out.flush() }

// Runs a started process to its end, killed (with its descendants) if the
// branch is aborted meanwhile; `work` reads its output and waits for it.
def tracked = { Process process, Closure work ->
    Abort abort = ctx().abort
    if (!abort.track(process)) {
        Kill.terminate([process])
        throw new FlowInterrupted("aborted: ${abort.getReason()}")
    }
    def result
    try { result = work() } finally { abort.untrack(process) }
    if (abort.isAborted()) throw new FlowInterrupted("aborted: ${abort.getReason()}")
    result
}

// ---- steps

def steps = [:]
steps.echo = { Object message ->
    String branch = ctx().branch
    log((branch == null ? '' : "[${branch}] ") + message.toString())
}
steps.error = { Object message -> throw new StepFailure(message.toString()) }
steps.sh = { Object arg ->
    Map m = arg instanceof Map ? arg : [script: arg.toString()]
    String script = m.script.toString()
    log('[Pipeline] sh')
    def pb = new ProcessBuilder('/bin/sh', '-xe', '-c', script)
    pb.directory(ctx().cwd)
    pb.environment().clear()
    currentEnv().each { k, v -> if (k != null && v != null) pb.environment().put(k, v) }
    pb.redirectError(ProcessBuilder.Redirect.INHERIT)
    pb.redirectInput(new File('/dev/null'))
    if (!m.returnStdout) pb.redirectOutput(ProcessBuilder.Redirect.INHERIT)
    def process = pb.start()
    String out = null
    int code = tracked(process) {
        if (m.returnStdout) out = process.inputStream.getText('UTF-8')
        process.waitFor()
    }
    System.out.flush()
    if (m.returnStatus) return code
    if (code != 0) throw new StepFailure("script returned exit code ${code}")
    m.returnStdout ? out : null
}
steps.script = { Closure body -> body() }
steps.dir = { String path, Closure body ->
    Ctx c = ctx()
    File old = c.cwd
    File next = new File(path).absolute ? new File(path) : new File(old, path)
    next.mkdirs()
    c.cwd = next
    try { body() } finally { c.cwd = old }
}
steps.pwd = { Map m = [:] -> m?.tmp ? ctx().cwd.path + '@tmp' : ctx().cwd.path }
steps.withEnv = { List overrides, Closure body ->
    Map<String, String> layer = [:]
    overrides.each { String kv -> int eq = kv.indexOf('='); layer[kv.substring(0, eq)] = kv.substring(eq + 1) }
    withLayer(layer, body)
}
steps.timeout = { Map ignored, Closure body -> body() }
steps.retry = { int times, Closure body ->
    for (int i = 1; ; i++) {
        try {
            return body()
        } catch (StepFailure e) {
            // An aborted branch is not retried.
            if (i >= times || e instanceof FlowInterrupted || ctx().abort.isAborted()) throw e
            log("Retrying (${e.message})")
        }
    }
}
steps.readFile = { Object arg ->
    String path = arg instanceof Map ? arg.file : arg.toString()
    new File(path).absolute ? new File(path).text : new File(ctx().cwd, path).text
}
steps.writeFile = { Map m ->
    File f = new File(m.file.toString()).absolute ? new File(m.file.toString()) : new File(ctx().cwd, m.file.toString())
    f.parentFile.mkdirs()
    f.text = m.text.toString()
}
steps.fileExists = { String path -> (new File(path).absolute ? new File(path) : new File(ctx().cwd, path)).exists() }

// Credentials: binding descriptions, resolved by withCredentials.
steps.sshUserPrivateKey = { Map m -> [type: 'sshUserPrivateKey'] + m }
steps.file = { Map m -> [type: 'file'] + m }
steps.string = { Map m -> [type: 'string'] + m }
steps.usernamePassword = { Map m -> [type: 'usernamePassword'] + m }

def credential = { String id, String type ->
    Map c = credentials[id] as Map
    if (c == null) throw new StepFailure("Could not find credentials entry with ID '${id}'")
    if (c.type != type) throw new StepFailure("Credentials '${id}' is of type '${c.type}' where '${type}' was expected")
    c
}
// Jenkins copies secrets to temporary files that live as long as the block.
def secretCopy = { String source ->
    tmpDir.mkdirs()
    File copy = File.createTempFile('secret', '', tmpDir)
    copy.bytes = new File(source).bytes
    copy.setReadable(false, false); copy.setReadable(true, true)
    copy.setWritable(false, false); copy.setWritable(true, true)
    copy
}
steps.withCredentials = { List bindings, Closure body ->
    Map<String, String> layer = [:]
    List<File> files = []
    try {
        bindings.each { Map b ->
            Map c = credential(b.credentialsId.toString(), b.type.toString())
            switch (b.type) {
                case 'sshUserPrivateKey':
                    File key = secretCopy(c.privateKeyFile.toString()); files << key
                    layer[b.keyFileVariable] = key.path
                    if (b.usernameVariable) layer[b.usernameVariable] = c.username?.toString() ?: ''
                    if (b.passphraseVariable) layer[b.passphraseVariable] = c.passphrase?.toString() ?: ''
                    break
                case 'file':
                    File copy = secretCopy(c.file.toString()); files << copy
                    layer[b.variable] = copy.path
                    break
                case 'string':
                    layer[b.variable] = c.secret.toString()
                    break
                case 'usernamePassword':
                    layer[b.usernameVariable] = c.username.toString()
                    layer[b.passwordVariable] = c.password.toString()
                    break
            }
        }
        withLayer(layer, body)
    } finally {
        files.each { it.delete() }
    }
}
// sshagent: a real ssh-agent holding the keys for the block, SSH_AUTH_SOCK set.
steps.sshagent = { Object ids, Closure body ->
    List idList = ids instanceof Map ? ids.credentials : ids
    def started = ['ssh-agent', '-s'].execute()
    String text = started.text
    started.waitFor()
    def sock = (text =~ /SSH_AUTH_SOCK=([^;]+);/)[0][1]
    def pid = (text =~ /SSH_AGENT_PID=(\d+);/)[0][1]
    Map<String, String> layer = [SSH_AUTH_SOCK: sock, SSH_AGENT_PID: pid]
    try {
        idList.each { id ->
            Map c = credential(id.toString(), 'sshUserPrivateKey')
            File key = secretCopy(c.privateKeyFile.toString())
            try {
                def pb = new ProcessBuilder('ssh-add', key.path)
                pb.environment().putAll(layer)
                pb.environment().put('SSH_ASKPASS_REQUIRE', 'never')
                pb.redirectErrorStream(true)
                def p = pb.start()
                String said = p.inputStream.text
                if (p.waitFor() != 0) throw new StepFailure("ssh-add failed for '${id}': ${said}")
            } finally { key.delete() }
        }
        withLayer(layer, body)
    } finally {
        ['kill', pid].execute().waitFor()
    }
}
steps.git = { Map m ->
    String branch = (m.branch ?: 'master').toString()
    String url = m.url.toString()
    def run = { List cmd ->
        log("> git ${cmd.join(' ')}")
        def pb = new ProcessBuilder(['git'] + cmd)
        pb.directory(ctx().cwd)
        pb.redirectErrorStream(true)
        def p = pb.start()
        String out = null
        int code = tracked(p) { out = p.inputStream.text; p.waitFor() }
        if (code != 0) throw new StepFailure("git ${cmd[0]} failed: ${out}")
    }
    if (!new File(ctx().cwd, '.git').exists()) {
        run(['init', '-q'])
        run(['remote', 'add', 'origin', url])
    } else {
        run(['remote', 'set-url', 'origin', url])
    }
    run(['fetch', '-q', '--force', 'origin', "+refs/heads/${branch}:refs/remotes/origin/${branch}".toString()])
    run(['checkout', '-q', '-f', '-B', branch, "origin/${branch}".toString()])
}

// parallel: Jenkins' scripted step. Each branch runs in a thread of its own with
// a copy of the caller's Ctx; this thread waits for them all, and with failFast
// aborts the others at the first failure.
steps.parallel = { Map branchMap ->
    Ctx caller = ctx()
    boolean failFast = false
    Map<String, Closure> branches = new LinkedHashMap<>()
    branchMap.each { key, value ->
        String name = key.toString()
        if (name == 'failFast') {
            failFast = value instanceof Boolean ? value : value.toString().toBoolean()
        } else if (value instanceof Closure) {
            branches[name] = value
        } else {
            throw new StepFailure("parallel: branch '${name}' is not a closure but ${value?.getClass()?.name}")
        }
    }
    log('[Pipeline] parallel')
    def finished = new java.util.concurrent.LinkedBlockingQueue<List>()
    Map<String, Abort> aborts = new LinkedHashMap<>()
    List<Thread> threads = []
    branches.each { String name, Closure body ->
        Abort abort = new Abort(caller.abort)
        aborts[name] = abort
        Ctx branchCtx = caller.fork(name, abort)
        threads << new Thread({
            context.set(branchCtx)
            Throwable failure = null
            try {
                body.call()
            } catch (Throwable e) {
                failure = e
            } finally {
                log('[Pipeline] }')
                if (failure != null) log("Failed in branch ${name}")
                finished.put([name, failure])
            }
        } as Runnable, "parallel branch ${name}")
        log("[Pipeline] { (Branch: ${name})")
    }
    Map<String, Throwable> failures = new LinkedHashMap<>()
    Set<String> done = new HashSet<>()
    List<String> aborted = []
    // Aborts the branches still running and kills their processes.
    def abortOthers = { String reason ->
        List<Process> processes = []
        aborts.each { other, abort ->
            if (other in done) return
            aborted << other
            List<Process> running = abort.abort(reason)
            if (running) log("[${other}] Sending interrupt signal to process")
            processes.addAll(running)
        }
        if (processes) {
            int stubborn = Kill.terminate(processes)
            if (stubborn) log("After ${Kill.GRACE_MILLIS / 1000}s ${stubborn} process(es) did not stop; killed them")
        }
    }
    String firstFailed = null
    try {
        threads.each { it.start() }
        threads.size().times {
            List result = finished.take()
            String name = result[0]
            Throwable failure = result[1]
            done << name
            if (failure == null) return
            failures[name] = failure
            if (name in aborted || firstFailed != null) return
            firstFailed = name
            List<String> others = aborts.keySet().findAll { !(it in done) } as List
            if (!failFast || !others) return
            log("failFast: branch ${name} failed; aborting ${others.collect { "branch ${it}" }.join(', ')}")
            abortOthers("failFast, branch ${name} failed".toString())
        }
    } catch (Throwable e) {
        // The shim's own failure (or an interrupt): no branch outlives it.
        abortOthers("parallel failed: ${e}".toString())
        throw e
    } finally {
        threads.each { if (it.state != Thread.State.NEW) it.join() }
        aborts.values().each { caller.abort.release(it) }
    }
    log('[Pipeline] // parallel')

    if (!failures) return null
    // This parallel is itself in a branch that was aborted: so is it.
    if (caller.abort.isAborted()) throw new FlowInterrupted("aborted: ${caller.abort.getReason()}")
    def describe = { Throwable e -> e instanceof StepFailure ? e.message : e.toString() }
    List<String> failed = failures.keySet().findAll { !(it in aborted && failures[it] instanceof FlowInterrupted) } as List
    List<String> interrupted = failures.keySet().findAll { !(it in failed) } as List
    String message = failed.collect { "Failed in branch ${it}: ${describe(failures[it])}" }.join('; ')
    if (interrupted) message += "${message ? '; ' : ''}aborted (failFast): ${interrupted.collect { "branch ${it}" }.join(', ')}"
    throw new StepFailure(message)
}

// Steps as the Jenkinsfile sees them: none starts in an aborted branch.
steps.each { String name, Closure step ->
    binding.setVariable(name, { Object... args ->
        Abort abort = ctx().abort
        if (abort.isAborted()) throw new FlowInterrupted("aborted: ${abort.getReason()}; ${name} not started")
        step(*args)
    })
}
binding.setVariable('env', envVars)
binding.setVariable('params', params)
binding.setVariable('currentBuild', build)
binding.setVariable('any', 'any')
binding.setVariable('none', 'none')

// ---- the pipeline

def runEnvironment = { Closure block, Map<String, String> into ->
    def collector = new EnvBlock(onSet: { String k, String v -> into[k] = v })
    block.delegate = collector
    block.resolveStrategy = Closure.DELEGATE_FIRST
    block()
}

def runPost = { Closure block, String previous ->
    def spec = new PostSpec()
    block.delegate = spec
    block.resolveStrategy = Closure.DELEGATE_FIRST
    block()
    String now = build.currentResult
    List<String> order = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success', 'unstable', 'unsuccessful', 'cleanup']
    order.each { name ->
        Closure c = spec.blocks[name]
        if (c == null) return
        boolean applies = name == 'always' || name == 'cleanup' ||
            (name == 'success' && now == 'SUCCESS') || (name == 'failure' && now == 'FAILURE') ||
            (name == 'unsuccessful' && now != 'SUCCESS') || (name == 'unstable' && now == 'UNSTABLE') ||
            (name == 'changed' && previous != null && previous != now)
        if (!applies) return
        log("[Pipeline] ${name}")
        try {
            c()
        } catch (Throwable e) {
            log("ERROR: ${e.message}")
            build.result = 'FAILURE'
        }
    }
}

def runStage = { String name, Closure body ->
    log('[Pipeline] { ')
    log("[Pipeline] stage (${name})")
    if (build.result == 'FAILURE') {
        log("Stage \"${name}\" skipped due to earlier failure(s)")
        log('[Pipeline] }')
        return
    }
    def spec = new StageSpec()
    body.delegate = spec
    body.resolveStrategy = Closure.DELEGATE_FIRST
    body()
    Map<String, String> layer = [STAGE_NAME: name]
    withLayer(layer) {
        if (spec.environmentBlock) runEnvironment(spec.environmentBlock, layer)
        if (spec.whenBlock) {
            def when = new WhenSpec()
            spec.whenBlock.delegate = when
            spec.whenBlock.resolveStrategy = Closure.DELEGATE_FIRST
            spec.whenBlock()
            if (!when.expressions.every { it() }) {
                log("Stage \"${name}\" skipped due to when conditional")
                return
            }
        }
        long begun = System.nanoTime()
        try {
            spec.stepsBlock?.call()
        } catch (Exception e) {
            log("ERROR: ${e instanceof StepFailure ? e.message : e.toString()}")
            build.result = 'FAILURE'
            build.failedStage = name
        }
        // What Jenkins' stage view shows; the fleet benchmark reads it.
        log("[shim] stage (${name}) took ${(long) ((System.nanoTime() - begun) / 1000000)} ms")
        if (spec.postBlock) runPost(spec.postBlock, null)
    }
    log('[Pipeline] }')
}

binding.setVariable('pipeline', { Closure body ->
    def spec = new PipelineSpec()
    body.delegate = spec
    body.resolveStrategy = Closure.DELEGATE_FIRST
    body()
    if (parseOnly) {
        // The structure, without running anything: every stage has steps.
        if (!spec.stagesBlock) throw new StepFailure('the pipeline has no stages')
        def stages = new StagesSpec()
        spec.stagesBlock.delegate = stages
        spec.stagesBlock.resolveStrategy = Closure.DELEGATE_FIRST
        spec.stagesBlock()
        stages.stages.each { s ->
            def stage = new StageSpec()
            s[1].delegate = stage
            s[1].resolveStrategy = Closure.DELEGATE_FIRST
            s[1]()
            if (!stage.stepsBlock) throw new StepFailure("stage '${s[0]}' has no steps")
        }
        log("stages: ${stages.stages.collect { it[0] }.join(', ')}")
        return
    }
    log('[Pipeline] Start of Pipeline')
    if (spec.optionsBlock) {
        def options = new OptionsSpec()
        spec.optionsBlock.delegate = options
        spec.optionsBlock.resolveStrategy = Closure.DELEGATE_FIRST
        spec.optionsBlock()
    }
    def declared = new ParamsSpec()
    if (spec.parametersBlock) {
        spec.parametersBlock.delegate = declared
        spec.parametersBlock.resolveStrategy = Closure.DELEGATE_FIRST
        spec.parametersBlock()
    }
    given.keySet().findAll { !declared.defaults.containsKey(it) }.each {
        throw new StepFailure("unknown build parameter ${it}; the Jenkinsfile declares ${declared.defaults.keySet()}")
    }
    declared.defaults.each { k, v ->
        def value = given.containsKey(k) ? given[k] : v
        if (v instanceof Boolean && value instanceof String) value = value.toBoolean()
        params[k] = value
        globalEnv[k] = value.toString()
    }
    try {
        if (spec.environmentBlock) runEnvironment(spec.environmentBlock, globalEnv)
        if (spec.stagesBlock) {
            def stages = new StagesSpec()
            spec.stagesBlock.delegate = stages
            spec.stagesBlock.resolveStrategy = Closure.DELEGATE_FIRST
            spec.stagesBlock()
            stages.stages.each { s -> runStage(s[0], s[1]) }
        }
    } catch (StepFailure e) {
        log("ERROR: ${e.message}")
        build.result = 'FAILURE'
    }
    if (spec.postBlock) runPost(spec.postBlock, null)
})

def shell = new GroovyShell(binding)
def script
try {
    script = shell.parse(jenkinsfile)
} catch (Exception e) {
    System.err.println("${jenkinsfile}: ${e.message}")
    System.exit(1)
}
try {
    script.run()
} catch (StepFailure e) {
    log("ERROR: ${e.message}")
    build.result = 'FAILURE'
    if (parseOnly) System.exit(1)
}
if (parseOnly) {
    log("${jenkinsfile}: parsed, a declarative pipeline")
    System.exit(0)
}
if (build.failedStage) log("[shim] failed stage: ${build.failedStage}")
log("Finished: ${build.currentResult}")
System.exit(build.currentResult == 'SUCCESS' ? 0 : 1)

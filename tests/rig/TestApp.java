// A stand-in for a Spring Boot jar, compiled by the test rig.
//
// System properties:
//   server.port       port to listen on (8080)
//   server.address    address to bind (127.0.0.1)
//   app.version       reported by / and /version ("0.0.0")
//   app.startDelay    milliseconds to wait before listening (0)
//   app.crash         "true": print Spring's failure banner and exit 1
//   app.unhealthy     "true": /actuator/health answers 503 {"status":"DOWN"}
//   app.ignoreTerm    "true": SIGTERM is ignored (only SIGKILL stops it)
//   app.stopDelay     milliseconds to linger after SIGTERM before exiting (0)
//   app.crashAfter    milliseconds after which to fail like app.crash, before listening (0: never)
//
// Defaults for all of them may come from /application.properties in the jar, as
// Spring Boot reads it (a -D flag wins): the Jenkins tests' gradlew bakes the
// build's version in there. An application.properties in the working directory
// wins over the jar's, as Spring Boot's does: the fleet tests make one host's
// app crash that way.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.Executors;

public class TestApp {
    public static void main(String[] args) throws Exception {
        long started = System.nanoTime();
        // A file beside the app wins over the jar's, as in Spring Boot.
        java.io.File beside = new java.io.File("application.properties");
        if (beside.isFile()) {
            try (InputStream in = new java.io.FileInputStream(beside)) {
                defaults(in);
            }
        }
        try (InputStream in = TestApp.class.getResourceAsStream("/application.properties")) {
            if (in != null) {
                defaults(in);
            }
        }
        int port = Integer.parseInt(System.getProperty("server.port", "8080"));
        String address = System.getProperty("server.address", "127.0.0.1");
        String version = System.getProperty("app.version", "0.0.0");
        String profile = System.getProperty("spring.profiles.active", "default");
        boolean unhealthy = Boolean.parseBoolean(System.getProperty("app.unhealthy", "false"));
        long startDelay = Long.parseLong(System.getProperty("app.startDelay", "0"));
        long stopDelay = Long.parseLong(System.getProperty("app.stopDelay", "0"));

        System.out.println("Starting TestApp v" + version + " with PID " + ProcessHandle.current().pid()
                + " (profile: " + profile + ")");
        if (Boolean.parseBoolean(System.getProperty("app.crash", "false"))) {
            failed("Application context failed to refresh: app.crash was set.",
                    "Unset app.crash.");
        }
        if (Boolean.parseBoolean(System.getProperty("app.ignoreTerm", "false"))) {
            sun.misc.Signal.handle(new sun.misc.Signal("TERM"), signal ->
                    System.out.println("Ignoring SIGTERM"));
        }
        if (startDelay > 0) {
            Thread.sleep(startDelay);
        }
        long crashAfter = Long.parseLong(System.getProperty("app.crashAfter", "0"));
        if (crashAfter > 0) {
            Thread.sleep(crashAfter);
            failed("Application context failed to refresh after " + crashAfter + " ms: app.crashAfter was set.",
                    "Unset app.crashAfter.");
        }

        HttpServer server;
        try {
            server = HttpServer.create(new InetSocketAddress(address, port), 64);
        } catch (BindException e) {
            failed("Web server failed to start. Port " + port + " was already in use.",
                    "Identify and stop the process that's listening on port " + port
                            + " or configure this application to listen on another port.");
            return;
        }
        server.createContext("/actuator/health", exchange -> {
            if (unhealthy) {
                send(exchange, 503, "application/json", "{\"status\":\"DOWN\"}");
            } else {
                send(exchange, 200, "application/json", "{\"status\":\"UP\"}");
            }
        });
        server.createContext("/version", exchange -> send(exchange, 200, "text/plain", version + "\n"));
        server.createContext("/", exchange -> send(exchange, 200, "text/plain",
                "version=" + version + " port=" + port + " profile=" + profile + "\n"));
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("Stopping TestApp on port " + port);
            if (stopDelay > 0) {
                try { Thread.sleep(stopDelay); } catch (InterruptedException ignored) { }
            }
            server.stop(0);
        }));
        System.out.println("Tomcat started on port " + port + " (http)");
        System.out.printf("Started TestApp in %.3f seconds%n", (System.nanoTime() - started) / 1e9);
    }

    private static void failed(String description, String action) {
        System.out.println();
        System.out.println("***************************");
        System.out.println("APPLICATION FAILED TO START");
        System.out.println("***************************");
        System.out.println();
        System.out.println("Description:");
        System.out.println();
        System.out.println(description);
        System.out.println();
        System.out.println("Action:");
        System.out.println();
        System.out.println(action);
        System.out.flush();
        System.exit(1);
    }

    private static void send(HttpExchange exchange, int status, String type, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", type);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    /** Sets each property of `in` that is not set yet. */
    private static void defaults(InputStream in) throws IOException {
        Properties defaults = new Properties();
        defaults.load(in);
        for (String key : defaults.stringPropertyNames()) {
            if (System.getProperty(key) == null) {
                System.setProperty(key, defaults.getProperty(key));
            }
        }
    }
}

// OkHttp 3.x client used by scripts/testbed.sh (compiled at run time against Debian's
// libokhttp-java: /usr/share/java/okhttp.jar + okio.jar).
//
//   java PinClient trust    URL [PROXYHOST:PORT]
//   java PinClient pin      URL PIN [PROXYHOST:PORT]   OkHttp CertificatePinner (checked after the handshake)
//   java PinClient tm-throw URL [PROXYHOST:PORT]       custom X509TrustManager that always throws
//   java PinClient fallback URL PIN PROXYHOST:PORT N  pinned client, app-level retry loop: N tries
//                                                     through the proxy, then the same client direct
//   java PinClient fallback-route URL PIN BINDIP N    pinned client, N tries on the default route (through
//                                                     an inline inspector), then the same client with its
//                                                     sockets bound to BINDIP (a route around the inspector)
//   java PinClient many (jdk|okhttp):URL...           benign load: one request per URL, in order, with
//                                                     HttpsURLConnection (jdk) or one shared OkHttpClient
//   -Dpinclient.bind=IP: bind every OkHttp socket to IP (a client with its own route)
//
// The default trust store comes from -Djavax.net.ssl.trustStore (the testbed points it at a
// PKCS12 store holding the origin CA, so in "pin" mode only the pin can fail).
// Exit status: 0 = request succeeded, 2 = failed the way the mode intends, 1 = anything else.
// fallback: 0 = every proxy try failed the pin and the direct try succeeded, 1 = anything else.

import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.Socket;
import java.net.URL;
import javax.net.SocketFactory;
import javax.net.ssl.HttpsURLConnection;
import java.security.SecureRandom;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;
import okhttp3.CertificatePinner;
import okhttp3.ConnectionPool;
import okhttp3.HttpUrl;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;

public class PinClient {
    static final class ThrowingTrustManager implements X509TrustManager {
        @Override public void checkClientTrusted(X509Certificate[] chain, String authType)
                throws CertificateException {
            throw new CertificateException("client certs not supported");
        }
        @Override public void checkServerTrusted(X509Certificate[] chain, String authType)
                throws CertificateException {
            throw new CertificateException("custom trust logic rejected "
                    + chain[0].getSubjectX500Principal());
        }
        @Override public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; }
    }

    /** Plain sockets bound to one local address: the app's own route around the inspector. */
    static final class BindSocketFactory extends SocketFactory {
        final InetAddress local;
        BindSocketFactory(String ip) throws IOException { local = InetAddress.getByName(ip); }
        @Override public Socket createSocket() throws IOException {
            Socket s = new Socket();
            s.bind(new InetSocketAddress(local, 0));
            return s;
        }
        @Override public Socket createSocket(String h, int p) throws IOException {
            Socket s = createSocket(); s.connect(new InetSocketAddress(h, p)); return s;
        }
        @Override public Socket createSocket(String h, int p, InetAddress la, int lp) throws IOException {
            return createSocket(h, p);
        }
        @Override public Socket createSocket(InetAddress h, int p) throws IOException {
            Socket s = createSocket(); s.connect(new InetSocketAddress(h, p)); return s;
        }
        @Override public Socket createSocket(InetAddress h, int p, InetAddress la, int lp) throws IOException {
            return createSocket(h, p);
        }
    }

    /** Pinned app behind an inline inspector: N tries on the default route, then via its own route. */
    static int fallbackRoute(HttpUrl url, String pin, String bindIp, int tries) throws IOException {
        OkHttpClient base = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS)
                .readTimeout(10, TimeUnit.SECONDS)
                .certificatePinner(new CertificatePinner.Builder().add(url.host(), pin).build())
                .build();
        int rc = 0;
        for (int i = 1; i <= tries + 1; i++) {
            boolean direct = i > tries;
            OkHttpClient c = direct ? base.newBuilder().socketFactory(new BindSocketFactory(bindIp)).build() : base;
            String how = "try " + i + (direct ? " from " + bindIp : " on the default route");
            try (Response r = c.newCall(new Request.Builder().url(url).build()).execute()) {
                System.err.println("java/okhttp: " + how + ": " + r.protocol() + " " + r.code() + " "
                        + r.handshake().tlsVersion() + " body=" + r.body().string().trim());
                if (!direct) rc = 1;
            } catch (SSLPeerUnverifiedException e) {
                System.err.println("java/okhttp: " + how + ": SSLPeerUnverifiedException: "
                        + e.getMessage().split("\n")[0]);
                if (direct) rc = 1;
            } catch (IOException e) {
                System.err.println("java/okhttp: " + how + ": " + e);
                rc = 1;
            }
        }
        base.dispatcher().executorService().shutdown();
        base.connectionPool().evictAll();
        return rc;
    }

    /** Benign load: every URL once, each answer read in full. */
    static int many(String[] specs) throws IOException {
        OkHttpClient ok = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS).readTimeout(10, TimeUnit.SECONDS).build();
        int good = 0, n = 0;
        for (String spec : specs) {
            n++;
            int i = spec.indexOf(':');
            String how = spec.substring(0, i), u = spec.substring(i + 1);
            try {
                if (how.equals("jdk")) {
                    HttpsURLConnection c = (HttpsURLConnection) new URL(u).openConnection();
                    c.setConnectTimeout(10000);
                    c.setReadTimeout(10000);
                    try (InputStream in = c.getInputStream()) {
                        in.readAllBytes();
                    }
                    if (c.getResponseCode() == 200) good++;
                } else {
                    // a pool of its own per request: OkHttp would otherwise coalesce the HTTP/2
                    // connections of names that share an address and a certificate into one
                    OkHttpClient c = ok.newBuilder().connectionPool(new ConnectionPool()).build();
                    try (Response r = c.newCall(new Request.Builder().url(u).build()).execute()) {
                        r.body().string();
                        if (r.code() == 200) good++;
                    }
                    c.connectionPool().evictAll();
                }
            } catch (IOException e) {
                System.err.println("java: " + u + ": " + e);
            }
        }
        System.err.println("java: " + good + "/" + n + " requests answered 200");
        ok.dispatcher().executorService().shutdown();
        ok.connectionPool().evictAll();
        return good == n ? 0 : 1;
    }

    static Proxy proxy(String hostPort) {
        int i = hostPort.lastIndexOf(':');
        return new Proxy(Proxy.Type.HTTP, new InetSocketAddress(hostPort.substring(0, i),
                Integer.parseInt(hostPort.substring(i + 1))));
    }

    /** The AN1725 fallback pattern: one pinned OkHttpClient (shared pool and TLS setup), proxy tries, then direct. */
    static int fallback(HttpUrl url, String pin, String proxyArg, int tries) {
        OkHttpClient base = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS)
                .readTimeout(10, TimeUnit.SECONDS)
                .certificatePinner(new CertificatePinner.Builder().add(url.host(), pin).build())
                .build();
        int rc = 0;
        for (int i = 1; i <= tries + 1; i++) {
            boolean direct = i > tries;
            OkHttpClient c = base.newBuilder().proxy(direct ? Proxy.NO_PROXY : proxy(proxyArg)).build();
            String how = "try " + i + (direct ? " direct" : " via proxy " + proxyArg);
            try (Response r = c.newCall(new Request.Builder().url(url).build()).execute()) {
                System.err.println("java/okhttp: " + how + ": " + r.protocol() + " " + r.code() + " "
                        + r.handshake().tlsVersion() + " body=" + r.body().string().trim());
                if (!direct) rc = 1;
            } catch (SSLPeerUnverifiedException e) {
                System.err.println("java/okhttp: " + how + ": SSLPeerUnverifiedException: "
                        + e.getMessage().split("\n")[0]);
                if (direct) rc = 1;
            } catch (IOException e) {
                System.err.println("java/okhttp: " + how + ": " + e);
                rc = 1;
            }
        }
        base.dispatcher().executorService().shutdown();
        base.connectionPool().evictAll();
        return rc;
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        if (mode.equals("fallback")) {
            System.exit(fallback(HttpUrl.get(args[1]), args[2], args[3], Integer.parseInt(args[4])));
        }
        if (mode.equals("fallback-route")) {
            System.exit(fallbackRoute(HttpUrl.get(args[1]), args[2], args[3], Integer.parseInt(args[4])));
        }
        if (mode.equals("many")) {
            System.exit(many(java.util.Arrays.copyOfRange(args, 1, args.length)));
        }
        HttpUrl url = HttpUrl.get(args[1]);
        OkHttpClient.Builder b = new OkHttpClient.Builder()
                .connectTimeout(10, TimeUnit.SECONDS)
                .readTimeout(10, TimeUnit.SECONDS);
        String bind = System.getProperty("pinclient.bind");
        if (bind != null) b.socketFactory(new BindSocketFactory(bind));
        String proxyArg = null;
        switch (mode) {
            case "trust":
                proxyArg = args.length > 2 ? args[2] : null;
                break;
            case "pin":
                b.certificatePinner(new CertificatePinner.Builder().add(url.host(), args[2]).build());
                proxyArg = args.length > 3 ? args[3] : null;
                break;
            case "tm-throw": {
                X509TrustManager tm = new ThrowingTrustManager();
                SSLContext ctx = SSLContext.getInstance("TLS");
                ctx.init(null, new TrustManager[] {tm}, new SecureRandom());
                b.sslSocketFactory(ctx.getSocketFactory(), tm);
                proxyArg = args.length > 2 ? args[2] : null;
                break;
            }
            default:
                System.err.println("unknown mode " + mode);
                System.exit(1);
        }
        if (proxyArg != null) b.proxy(proxy(proxyArg));
        OkHttpClient client = b.build();
        int rc;
        try (Response r = client.newCall(new Request.Builder().url(url).build()).execute()) {
            System.err.println("java/okhttp: " + r.protocol() + " " + r.code() + " "
                    + r.handshake().tlsVersion() + " body=" + r.body().string().trim());
            rc = 0;
        } catch (SSLPeerUnverifiedException e) {
            System.err.println("java/okhttp: SSLPeerUnverifiedException: "
                    + e.getMessage().split("\n")[0]);
            rc = mode.equals("pin") ? 2 : 1;
        } catch (SSLHandshakeException e) {
            System.err.println("java/okhttp: SSLHandshakeException: " + e.getMessage());
            rc = mode.equals("tm-throw") || mode.equals("trust") ? 2 : 1;
        } catch (IOException e) {
            System.err.println("java/okhttp: " + e);
            rc = 1;
        }
        client.dispatcher().executorService().shutdown();
        client.connectionPool().evictAll();
        System.exit(rc);
    }
}

// WebRTC audio processing 0.3 (Debian bookworm: libwebrtc-audio-processing-dev) AEC, run on
// the echo room's signals for bench/webrtc-compare/compare.mjs. Not part of the daemon.
// usage: apm03 MIC.raw REF.raw OUT.raw STREAM_DELAY_MS   (16 kHz s16le mono; LEVEL=low|moderate|high)
#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <ctime>
static std::vector<int16_t> rd(const char* p) { FILE* f = fopen(p, "rb"); std::vector<int16_t> v; int16_t b[4096]; size_t n; while ((n = fread(b, 2, 4096, f)) > 0) v.insert(v.end(), b, b + n); fclose(f); return v; }
int main(int argc, char** argv) {
  auto mic = rd(argv[1]); auto ref = rd(argv[2]); int delay = atoi(argv[4]);
  webrtc::Config cfg; cfg.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(true)); cfg.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(true));
  webrtc::AudioProcessing* apm = webrtc::AudioProcessing::Create(cfg);
  apm->echo_cancellation()->enable_drift_compensation(false);
  { const char* l = getenv("LEVEL"); apm->echo_cancellation()->set_suppression_level(l && l[0]=='l' ? webrtc::EchoCancellation::kLowSuppression : l && l[0]=='m' ? webrtc::EchoCancellation::kModerateSuppression : webrtc::EchoCancellation::kHighSuppression); }
  apm->echo_cancellation()->Enable(true);
  apm->high_pass_filter()->Enable(false);
  const int N = 160; std::vector<int16_t> out(mic.size());
  webrtc::AudioFrame far, near;
  clock_t c0 = clock();
  for (size_t f = 0; f + N <= mic.size(); f += N) {
    far.UpdateFrame(0, 0, ref.data() + f, N, 16000, webrtc::AudioFrame::kNormalSpeech, webrtc::AudioFrame::kVadUnknown, 1);
    near.UpdateFrame(0, 0, mic.data() + f, N, 16000, webrtc::AudioFrame::kNormalSpeech, webrtc::AudioFrame::kVadUnknown, 1);
    apm->AnalyzeReverseStream(&far);
    apm->set_stream_delay_ms(delay);
    apm->ProcessStream(&near);
    for (int i = 0; i < N; i++) out[f + i] = near.data_[i];
  }
  fprintf(stderr, "cpu %.3f s for %.1f s audio\n", double(clock() - c0) / CLOCKS_PER_SEC, mic.size() / 16000.0);
  FILE* o = fopen(argv[3], "wb"); fwrite(out.data(), 2, out.size(), o); fclose(o);
  delete apm; return 0;
}
